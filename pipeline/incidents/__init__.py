"""The DPO's breach desk: incidents, their 72-hour clock and the actions taken on them."""
