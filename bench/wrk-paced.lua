-- Paces each connection to about one request per millisecond, so latency
-- shows service time rather than queueing behind a saturated CPU.
delay = function() return 1 end
