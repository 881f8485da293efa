"""Load and validate an inventory (hopcap's site.yml, or an Ansible INI/YAML inventory).

Public API (used by cli.py and the orchestrator):

    load(path, *, path_override=None) -> Inventory     # raises InventoryError with every problem
"""
