"""Recurrent networks: pure cells in PyTorch's weight layout, the layers of every backend (fused, Python
loop, hand-written BPTT, C++ loops, scans), and the CharRNN model stacked from them."""
