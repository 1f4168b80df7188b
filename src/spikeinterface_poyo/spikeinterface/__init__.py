"""SpikeInterface integration: the ``poyo_decoding`` analyzer extension, threshold crossings as
a sorting, the ``plot_decoded_behavior`` widget, and the import hooks that expose
``spikeinterface.full.decode_behavior``."""
