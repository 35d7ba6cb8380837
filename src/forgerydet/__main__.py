from forgerydet.cli.app import cli

cli()
