"""hopcap: find where along a network path a TCP segment was dropped, injected or rewritten."""

__version__ = "0.1.0"
