"""Reference implementations transcribed from the authors' published code, for parity tests.

Each module copies small pure-torch pieces of one published modeling file, with the repository,
file and function named above each piece and every deviation from the original marked
`# plmlab:`. They are test oracles only: nothing in src/ imports them.
"""
