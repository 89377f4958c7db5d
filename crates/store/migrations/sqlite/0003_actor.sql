-- Who caused each record: the caller whose request it answers (token id, name, role,
-- tenant or node, source address), as JSON; NULL for what the control plane did by itself
-- and for records written before actors were logged.
ALTER TABLE events ADD COLUMN actor TEXT;
