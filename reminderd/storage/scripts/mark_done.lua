-- Record that one processor finished an occurrence, so a retry or a crash recovery
-- re-runs only the processors that did not.
-- ARGV[3] occurrence, ARGV[4] processor name
-- Returns 1 when recorded, 0 when the occurrence is no longer ours.
if not owned(ONE.record, ONE.lock, ARGV[3]) then return 0 end
add_done(ONE.record, ARGV[4])
return 1
