// Node 20 lacks Promise.withResolvers, which the Restate SDK uses: load with NODE_OPTIONS=--import ./polyfill.mjs
if (!Promise.withResolvers) Promise.withResolvers = function () { let resolve, reject; const promise = new this((a, b) => { resolve = a; reject = b; }); return { promise, resolve, reject }; };
