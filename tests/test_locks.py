"""Ownership locks: exclusive, non-blocking try, held check, freed by a crash, any-thread release."""
import subprocess
import sys
import threading

from charrnn.grid.locks import FileLock, is_held, lock_path

HOLD = ("import sys, time; from charrnn.grid.locks import FileLock; "
        "lock = FileLock(sys.argv[1]); assert lock.acquire(); print('held', flush=True); time.sleep(60)")


def test_second_owner_is_refused_without_blocking_until_release(tmp_path):
    path = lock_path(tmp_path, "grid", "abc")
    first, second = FileLock(path), FileLock(path)
    assert first.acquire() and first.held and is_held(path)
    assert not second.acquire() and not second.held
    first.release()
    assert not first.held and not is_held(path)
    assert second.acquire()
    second.release()


def test_lock_of_a_killed_process_is_free_at_once(tmp_path):
    path = lock_path(tmp_path, "grid", "killed")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert is_held(path) and not FileLock(path).acquire()
    finally:
        holder.kill()
        holder.wait()
    assert not is_held(path)
    assert FileLock(path).acquire()


def test_lock_taken_in_one_thread_is_released_in_another(tmp_path):
    path = lock_path(tmp_path, "x")
    lock = FileLock(path)
    assert lock.acquire()
    worker = threading.Thread(target=lock.release)
    worker.start()
    worker.join()
    assert not lock.held and not is_held(path)


def test_acquire_twice_then_release_once_frees_the_lock(tmp_path):
    lock = FileLock(lock_path(tmp_path, "y"))
    assert lock.acquire() and lock.acquire()
    lock.release()
    assert not is_held(lock.path)


def test_probe_of_a_missing_lock_file_creates_nothing(tmp_path):
    path = lock_path(tmp_path, "never")
    assert not is_held(path) and not path.exists()
