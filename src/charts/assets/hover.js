// Hover tooltips for the SVG charts of src/charts (the charts themselves need no script).
// window.tollgateHover(root): every SVG title element under `root` becomes a tooltip shown in
// #tip, and each svg[data-hover=series] under it gets a crosshair reading the value under the pointer from its
// data-ts/data-vs lists (data-x0/-x1: the plot's pixel range, data-t0/-t1: its time range).
window.tollgateHover=function(root){
var tip=document.getElementById('tip');
if(!tip)return;
function show(e,text){tip.textContent=text;tip.style.display='block';
var x=e.clientX+14,y=e.clientY+14;if(x+tip.offsetWidth>innerWidth-8)x=e.clientX-tip.offsetWidth-14;
if(y+tip.offsetHeight>innerHeight-8)y=e.clientY-tip.offsetHeight-14;
tip.style.left=x+'px';tip.style.top=y+'px';}
function hide(){tip.style.display='none';}
function fmt(v){return Number(v).toLocaleString('en-US',{maximumFractionDigits:2});}
root.querySelectorAll('svg.chart title').forEach(function(t){var el=t.parentNode;
var text=t.textContent;el.removeChild(t);
el.addEventListener('mousemove',function(e){e.stopPropagation();show(e,text);});
el.addEventListener('mouseleave',hide);});
var series=Array.prototype.slice.call(root.querySelectorAll('svg[data-hover=series]'));
if(root.matches&&root.matches('svg[data-hover=series]'))series.push(root);
series.forEach(function(svg){
var ts=svg.getAttribute('data-ts').split(',').map(Number),vs=svg.getAttribute('data-vs').split(',').map(Number);
var x0=+svg.getAttribute('data-x0'),x1=+svg.getAttribute('data-x1');
var t0=+svg.getAttribute('data-t0'),t1=+svg.getAttribute('data-t1');
var unit=svg.getAttribute('data-unit'),xh=svg.querySelector('.xhair');
if(!ts.length||!xh)return;
svg.addEventListener('mousemove',function(e){var m=svg.getScreenCTM();if(!m)return;
var pt=svg.createSVGPoint();pt.x=e.clientX;pt.y=e.clientY;var p=pt.matrixTransform(m.inverse());
if(p.x<x0||p.x>x1){xh.style.display='none';hide();return;}
var t=t0+(p.x-x0)/(x1-x0)*(t1-t0),lo=0,hi=ts.length-1;
while(lo<hi){var mid=(lo+hi+1)>>1;if(ts[mid]<=t)lo=mid;else hi=mid-1;}
var X=x0+(ts[lo]-t0)/(t1-t0)*(x1-x0);xh.setAttribute('x1',X);xh.setAttribute('x2',X);
xh.style.display='block';show(e,'t = '+fmt(ts[lo])+' s: '+fmt(vs[lo])+' '+unit);});
svg.addEventListener('mouseleave',function(){xh.style.display='none';hide();});});
};
