"""Private helpers shared by every namespace (input access, docs, logging)."""
