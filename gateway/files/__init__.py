"""Files and batches (docs/files.md): the encrypted store, /v1/files and the batch runner."""
