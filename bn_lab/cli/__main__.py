from bn_lab.cli import entry

entry()
