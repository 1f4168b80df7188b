"""Model families. Each subpackage is one family (or a few related ones) built on the protocol in
:mod:`.base`; :mod:`.registry` saves and loads any of them and :mod:`.decoding` decodes with any."""
