-- Schema version 2: items appended one at a time (`BatchState::append_item`, the server's jobs) take the
-- batch's next position from a counter that only grows, so that the position (the item's key) of a
-- deleted item is never handed to another one. NULL until the first append or delete: the next position is
-- then the larger of this counter and the largest stored position + 1.
ALTER TABLE batches ADD COLUMN next_pos INTEGER;
