from bn_lab.cli import main

main(prog_name="bnlab")
