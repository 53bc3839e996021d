"""filterscope: watch a convolutional network learn its filters, live in the browser."""

__version__ = "0.1.0"
