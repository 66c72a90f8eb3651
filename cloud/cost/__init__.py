"""What a render costs: the machine catalog, refreshed prices, estimates and hard caps."""
