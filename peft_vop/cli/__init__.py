"""The `vop` command line: `vop prepare`, `vop eval`, `vop train`, `vop demo`."""
