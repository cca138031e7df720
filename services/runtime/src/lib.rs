//! The streaming runtime shared by every TrendStream processor.
