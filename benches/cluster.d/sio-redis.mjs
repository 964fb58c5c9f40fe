// socket.io 2.5 with the Redis adapter of its generation (socket.io-redis 5.4): one node of a
// socket.io cluster, for benches/cluster's side-by-side run. Its events are those of sigyard's
// test rooms dialect that the benchmark uses (src/proto/eio/echo.rs): `welcome` {sid} on
// connect, `echo` back to the sender, `direct` sid, args... -> `msg` args... to that socket
// (io.to(sid), which the adapter publishes to every node).
//
//   node sio-redis.mjs PORT REDIS_PORT        # prints READY when listening
import { createRequire } from 'node:module'
import http from 'node:http'

const require = createRequire(import.meta.url)
const socketio = require('socket.io')
const redisAdapter = require('socket.io-redis')

const [port, redisPort] = process.argv.slice(2).map(Number)
const server = http.createServer()
const io = socketio(server, { pingTimeout: 12000 })
io.adapter(redisAdapter({ host: '127.0.0.1', port: redisPort }))
io.on('connection', socket => {
  socket.emit('welcome', { sid: socket.id })
  socket.on('echo', (...args) => socket.emit('echo', ...args))
  socket.on('direct', (sid, ...args) => io.to(sid).emit('msg', ...args))
})
server.listen(port, '127.0.0.1', () => console.log('READY'))
