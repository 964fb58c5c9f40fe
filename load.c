sigyard-load: open-files limit raised to 20,000 (the hard limit)
sigyard-load [   1.0s] 3225/s completed  open 4  failed 0
sigyard-load [   2.0s] 3013/s completed  open 4  failed 0
sigyard-load [   3.0s] 2624/s completed  open 7  failed 0
sigyard-load [   4.1s] 3122/s completed  open 10  failed 0
sigyard-load [   5.1s] 3248/s completed  open 8  failed 0
sigyard-load [   6.1s] 3135/s completed  open 10  failed 0
sigyard-load [   7.1s] 2572/s completed  open 12  failed 0
sigyard-load churn against ws://127.0.0.1:7730: 1 thread(s) in 1 process(es), open-files limit 20,000
  connections: 23,881 attempted, 23,879 established, 0 failed, 0 closed by the server
  completed: 23,871 in 8.0 s = 2976/s
  cycle latency (connect → upgrade → echo): p50 3301.4 µs  p99 14.8 ms  p99.9 27.2 ms  max 36.4 ms  (n = 23,875)
