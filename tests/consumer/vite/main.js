// A bundled consumer: the element (side-effect import) and the API, as an app would use them.
import 'ddim-webgpu';
import * as ddim from 'ddim-webgpu';

window.ddim = ddim;
document.body.dataset.ready = 'yes';
