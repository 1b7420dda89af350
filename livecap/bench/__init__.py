"""What `livecap bench` measures, how, and how it reports."""
