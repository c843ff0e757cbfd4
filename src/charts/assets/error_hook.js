// Records script errors where a headless browser's DOM dump shows them (the Chromium tests read
// them): data-script-errors on the html and body elements, data-script-error-log on body. Runs
// first.
(function(){var errs=[];
function sync(){var n=String(errs.length);document.documentElement.setAttribute('data-script-errors',n);
if(document.body){document.body.setAttribute('data-script-errors',n);
if(errs.length)document.body.setAttribute('data-script-error-log',errs.join(' | '));}}
function rec(m){errs.push(String(m));sync();}
window.onerror=function(msg,src,line,col){rec(msg+' at '+(src||'inline')+':'+line+':'+col);return false;};
window.addEventListener('unhandledrejection',function(e){rec('unhandled rejection: '+e.reason);});
window.addEventListener('error',function(e){var t=e.target;if(t&&t!==window&&t.tagName)
rec('failed to load '+t.tagName.toLowerCase()+' '+(t.src||t.href||''));},true);
document.addEventListener('DOMContentLoaded',sync);
})();
