"""Guest physical memory and the page-table walker."""
