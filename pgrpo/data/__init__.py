"""MovieLens data: loading raw files and splitting them into examples."""
