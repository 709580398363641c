-- KEYS[1] the queue-moved gate; ARGV[1] the queue-moved channel, ARGV[2] its window in ms.
tick(KEYS[1], ARGV[1], ARGV[2])
