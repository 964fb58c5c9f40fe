// Preloaded by benches/compare (node --require ./loopback.cjs SERVER): every listen() of the
// unmodified server binds 127.0.0.1 only (y-webrtc's bin/server.js listens on every address)
// on the port asked for (0: any free one), and the port is printed as PORT=<n> once listening.
const net = require('node:net')
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const done = args.find(a => typeof a === 'function')
  const port = Number(typeof args[0] === 'object' ? args[0]?.port : args[0]) || 0
  this.once('listening', () => console.log(`PORT=${this.address().port}`))
  return listen.call(this, { port, host: '127.0.0.1' }, done)
}
