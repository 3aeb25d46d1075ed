"""The court package: its file layout, reading its files safely, and its VERIFY.txt."""
