"""The intake: badge messages from the broker, checked, reassembled, stored and receipted."""
