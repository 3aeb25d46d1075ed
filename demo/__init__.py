"""The end-to-end demo (``make demo``): the product's own processes, run as a hospital would."""
