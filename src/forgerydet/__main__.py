from forgerydet.cli import main

main()  # as the console command: a Ctrl-C while the command's modules load is one line, not a traceback
