sigyard-load: 1000 subscribers in 0.18 s (0 failed); publishes for 8s
scenario ywebrtc  url ws://127.0.0.1:7716/y-webrtc  threads 1
subscribers: 1000 of 1000 in 100 topics of 10 subscribed in 0.18 s, 0 failed: 5501 subscribers/s
subscribe latency (connect to the pong after the subscribe): p50 551 µs, p99 18416 µs, p99.9 19464 µs, max 19521 µs (1000 samples)
server RSS: 2,080 KiB before, 2,080 KiB at 1,000 subscribers, 2,080 KiB at the end; 0 B per subscriber (0 B of it anonymous)
publishes: 45342 in 8.0 s = 5668/s; deliveries 452468 = 56558/s
publish-to-last-subscriber latency: p50 16843 µs, p99 34996 µs, p99.9 40239 µs, max 47454 µs (45243 samples)
errors: {}
