"""The `hpcbench` command: `main` holds the verb tree, each other module is one verb."""
