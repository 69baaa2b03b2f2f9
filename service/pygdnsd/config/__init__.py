"""The ``config`` file: vscf syntax (vscf.py) and the options it sets (options.py)."""
