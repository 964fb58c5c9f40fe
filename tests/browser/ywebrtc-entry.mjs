// What ywebrtc.html imports: the real yjs and y-webrtc, bundled for the page by ywebrtc.mjs.
export * as Y from 'yjs';
export { WebrtcProvider } from 'y-webrtc';
