"""The dataset file (docs/dataset-format.md): a generator and an importer.

- `cdrs.dataset.generator`: realistic, repeatable datasets of any size (`generate()` for
  small ones in memory, `cdrs.dataset.files.write_dataset()` streams large ones).
- `cdrs.dataset.importer`: validates a file completely, then loads it all or nothing
  (`import_dataset()`).

The management commands `generate_dataset` and `import_dataset` are thin shells over these.
"""
