from forgerydet.cli.app import app

app(prog_name="forgerydet")
