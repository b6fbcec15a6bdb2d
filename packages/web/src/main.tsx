// First: the login and the first page's data start before Preact and the pages are evaluated.
import './boot.js';
import { options, render } from 'preact';
import { App } from './app.js';
import './style.css';

// Effects (the pages' first calls) run right after each render rather than after the next frame:
// a background or headless tab may not paint for a while, and the page's data need not wait for it.
options.requestAnimationFrame = (run) => setTimeout(run, 0);

render(<App />, document.getElementById('app')!);
