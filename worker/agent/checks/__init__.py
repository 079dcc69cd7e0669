"""Verification of generated suites: what "succeeded" means (pipeline.py has the stages in order).

verdict.py    stage outcomes and the verdict they add up to
suite.py      a candidate parsed once for every stage
scope.py      what a suite imports: keywords and variables, read from the repository (pylib.py for
              its Python libraries and variable files)
calls.py      every keyword call resolved with Robot Framework's rules
variables.py  every variable used must be defined in scope
static.py     stage 1: calls, imports, variables, placeholders, reuse, spec tags
rules.py      the repository's `.robot-fleet.toml` (parsed and validated)
declared.py   stage 2: the rules file and the repository's Robocop configuration (robocop.py)
execute.py    stage 4 (opt-in): the suite run by Robot Framework (materialize.py gathers its files)
"""
