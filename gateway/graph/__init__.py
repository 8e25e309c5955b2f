"""The compiled routing graph: immutable strategy nodes and the policies they apply."""
