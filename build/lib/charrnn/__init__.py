"""charrnn: a benchmark and ablation harness for recurrent neural networks."""
__version__ = "0.1.0"
