"""Files: atomic writes, model folders, NWB reading and writing. Nothing here knows a model family."""
