"""Training tasks: shipped corpora with their checksums, character streams, fixed-length sequence
problems (names, arithmetic, bitflip), their splits and batches; `data.make_task` builds one."""
