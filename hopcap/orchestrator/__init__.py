"""Everything that touches remote hosts: SSH transport, tcpdump lifecycle, facts, clocks."""
