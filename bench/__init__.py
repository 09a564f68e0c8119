"""Benchmarks: drd replicate side by side with skopeo sync and a raw copy, same run, same corpus."""
