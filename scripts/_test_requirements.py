"""Print the `test` extra of each given project directory's pyproject.toml, one requirement per line."""

import sys
import tomllib

for d in sys.argv[1:]:
    with open(f"{d}/pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    for req in project.get("optional-dependencies", {}).get("test", []):
        print(req)
