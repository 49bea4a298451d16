// An https server or client for tests/bpf_protocols_h2.rs, with Node's
// own (statically linked) OpenSSL.
//   node node_https.js server PORT KEY CERT   serves 200 "node" on every path
//   node node_https.js client PORT N          N GETs of /node/<i % 3> on one
//                                             keep-alive connection
const https = require('https');
const fs = require('fs');
const [mode, port] = process.argv.slice(2, 4);
if (mode === 'server') {
  const [key, cert] = process.argv.slice(4, 6);
  https
    .createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
      res.writeHead(req.url.endsWith('/2') ? 404 : 200, { 'content-type': 'text/plain' });
      res.end('node\n');
    })
    .listen(Number(port), '127.0.0.1', () => console.log('ready'));
} else {
  const n = Number(process.argv[4]);
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  let done = 0;
  const next = (i) => {
    if (i === n) {
      console.log(`done ${done}`);
      agent.destroy();
      return;
    }
    https
      .get({ host: '127.0.0.1', port: Number(port), path: `/node/${i % 3}`, agent, rejectUnauthorized: false }, (res) => {
        res.resume();
        res.on('end', () => {
          done += 1;
          next(i + 1);
        });
      })
      .on('error', (e) => {
        console.error(e);
        process.exit(1);
      });
  };
  next(0);
}
