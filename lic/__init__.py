"""lic: learned image compression for machines and people."""
