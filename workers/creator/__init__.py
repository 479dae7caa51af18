"""Creator worker: builds the SD-card image of an order (see DESIGN.md section 6)."""
