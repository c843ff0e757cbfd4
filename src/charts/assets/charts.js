// Live SVG charts for pages that redraw in the browser (the dashboard): the same markup, classes
// and axis algorithm as the server-side charts of src/charts/svg.cc (svg.chart, g.axes, .grid,
// .axis, .tick, .axis-title, .line, .xhair, .key/.sw legends), styled by charts.css, with
// tooltips and the crosshair from hover.js. window.tollgateCharts:
//   niceAxis(lo, hi, target) -> {lo, hi, ticks}   (svg.cc NiceAxis)
//   compact(v), count(v), pct(rate), secs(s)       (svg.cc Compact, Count, Pct, Secs)
//   lineChart(holder, opts): replaces holder's content by a line chart. opts: id, label, width,
//     height, series [{name, color, dash?, points [[t, v], ...]}], xmin, xmax, xtitle, ytitle,
//     yfmt (tick labels), unit (tooltips), ymin (default 0), yspan (least y range, default 1). Values null are gaps. The svg gets
//     data-points (points plotted over all series) and data-last (each series' last value).
//   barChart(holder, opts): horizontal share bars. opts: id, label, bars [{name, value, color,
//     tip}], fmt. The svg gets data-points (bars drawn).
// Strings from data are inserted as text nodes (never as markup).
(function(){
var NS='http://www.w3.org/2000/svg';
function niceAxis(lo,hi,target){
if(!isFinite(lo)||!isFinite(hi)){lo=0;hi=1;}
if(!(hi>lo))hi=lo+(lo===0?1:Math.abs(lo));
var raw=(hi-lo)/target,mag=Math.pow(10,Math.floor(Math.log10(raw))),norm=raw/mag;
var step=(norm<=1?1:norm<=2?2:norm<=2.5?2.5:norm<=5?5:10)*mag;
if(!isFinite(step)||step<=0)return {lo:lo,hi:hi,ticks:[lo,hi]};
var a={lo:Math.floor(lo/step+1e-9)*step,hi:Math.ceil(hi/step-1e-9)*step,ticks:[]};
if(!(a.hi>a.lo))a.hi=a.lo+step;
for(var i=0;i<=60;i++){var t=a.lo+i*step;if(t>a.hi+step*1e-6)break;
a.ticks.push(Math.abs(t)<step*1e-9?0:t);}
return a;}
function trim(s){if(s.indexOf('.')<0)return s;s=s.replace(/0+$/,'').replace(/\.$/,'');
return s==='-0'?'0':s;}
function grouped(v,d){if(!isFinite(v))return 'n/a';
return v.toLocaleString('en-US',{minimumFractionDigits:d,maximumFractionDigits:d});}
function count(v){if(v===null||!isFinite(v))return 'n/a';
if(Math.abs(v-Math.round(v))<1e-9)return grouped(Math.round(v),0);
return trim(grouped(v,Math.abs(v)<100?2:1));}
function compact(v){var a=Math.abs(v);
if(a>=1e9)return trim((v/1e9).toFixed(2))+'G';if(a>=1e6)return trim((v/1e6).toFixed(2))+'M';
if(a>=1e4)return trim((v/1e3).toFixed(1))+'k';if(a>=1000)return trim((v/1e3).toFixed(2))+'k';
if(a>=10||a===0)return trim(v.toFixed(1));return trim(v.toFixed(3));}
function pct(r){if(r===null||!isFinite(r))return 'n/a';var p=r*100;if(p===0)return '0%';
if(Math.abs(p)<0.1)return trim(p.toFixed(3))+'%';if(Math.abs(p)<10)return trim(p.toFixed(2))+'%';
return trim(p.toFixed(1))+'%';}
function secs(s){if(s===null||!isFinite(s))return 'n/a';if(s===0)return '0 s';
if(Math.abs(s)<1e-3)return trim((s*1e6).toFixed(1))+' \u00b5s';
if(Math.abs(s)<1)return trim((s*1000).toFixed(Math.abs(s)<0.01?2:1))+' ms';
if(Math.abs(s)<100)return trim(s.toFixed(2))+' s';return grouped(Math.round(s),0)+' s';}
function c(v){if(!isFinite(v))v=0;var s=v.toFixed(1);if(s.slice(-2)==='.0')s=s.slice(0,-2);
return s==='-0'?'0':s;}
function el(name,attrs,text){var e=document.createElementNS(NS,name);
for(var k in attrs)e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;return e;}
function svgOpen(id,label,w,h){return el('svg',{id:id,'class':'chart',viewBox:'0 0 '+w+' '+h,
width:'100%',role:'img','aria-label':label,preserveAspectRatio:'xMidYMid meet'});}
function plot(w,h){var p={w:w,h:h,x0:66,x1:w-16,y0:14,y1:h-34};
p.X=function(v){return p.x0+(v-p.xa.lo)/(p.xa.hi-p.xa.lo)*(p.x1-p.x0);};
p.Y=function(v){return p.y1-(v-p.ya.lo)/(p.ya.hi-p.ya.lo)*(p.y1-p.y0);};return p;}
function axes(p,xlabel,ylabel,xtitle,ytitle){var g=el('g',{'class':'axes'});
p.ya.ticks.forEach(function(t){var y=c(p.Y(t));
g.appendChild(el('line',{'class':'grid',x1:c(p.x0),x2:c(p.x1),y1:y,y2:y}));
g.appendChild(el('text',{'class':'tick',x:c(p.x0-6),y:c(p.Y(t)+4),'text-anchor':'end'},ylabel(t)));});
p.xa.ticks.forEach(function(t){var x=c(p.X(t));
g.appendChild(el('line',{'class':'tickmark',x1:x,x2:x,y1:c(p.y1),y2:c(p.y1+5)}));
g.appendChild(el('text',{'class':'tick',x:x,y:c(p.y1+17),'text-anchor':'middle'},xlabel(t)));});
g.appendChild(el('line',{'class':'axis',x1:c(p.x0),x2:c(p.x1),y1:c(p.y1),y2:c(p.y1)}));
g.appendChild(el('line',{'class':'axis',x1:c(p.x0),x2:c(p.x0),y1:c(p.y0),y2:c(p.y1)}));
if(xtitle)g.appendChild(el('text',{'class':'axis-title',x:c((p.x0+p.x1)/2),y:c(p.h-2),
'text-anchor':'middle'},xtitle));
g.appendChild(el('text',{'class':'axis-title',transform:'translate(13,'+c((p.y0+p.y1)/2)+
') rotate(-90)','text-anchor':'middle'},ytitle));
return g;}
function legend(items){var d=document.createElement('div');d.className='legend';
items.forEach(function(it){var k=document.createElement('span');k.className='key';
var sw=document.createElement('i');sw.className='sw';
sw.style.cssText=it.dash?'height:0;background:none;border-top:2px dashed '+it.color:
'height:0;background:none;border-top:2px solid '+it.color;
k.appendChild(sw);k.appendChild(document.createTextNode(it.name));d.appendChild(k);});return d;}
function replace(holder,nodes){while(holder.firstChild)holder.removeChild(holder.firstChild);
nodes.forEach(function(n){holder.appendChild(n);});
if(window.tollgateHover)window.tollgateHover(holder);}
function lineChart(holder,o){var w=o.width||560,h=o.height||230,p=plot(w,h);
var yfmt=o.yfmt||compact,ymax=0,ymin=o.ymin===undefined?0:o.ymin,n=0,last=[];
o.series.forEach(function(s){s.points.forEach(function(q){if(q[1]!==null&&isFinite(q[1])){
ymax=Math.max(ymax,q[1]);ymin=Math.min(ymin,q[1]);n++;}});});
p.xa=niceAxis(o.xmin,o.xmax,6);p.xa.lo=o.xmin;p.xa.hi=o.xmax;
p.xa.ticks=p.xa.ticks.filter(function(t){return t>=o.xmin-1e-9&&t<=o.xmax+1e-9;});
p.ya=niceAxis(ymin,Math.max(ymax*1.1,ymin+(o.yspan||1)),4);
var svg=svgOpen(o.id,o.label,w,h);svg.setAttribute('data-points',String(n));
svg.appendChild(axes(p,function(t){return count(t);},yfmt,o.xtitle,o.ytitle));
var first=null;
o.series.forEach(function(s,i){var d='',pen='M',cnt=0;
s.points.forEach(function(q){if(q[1]===null||!isFinite(q[1])){pen='M';return;}
d+=pen+c(p.X(q[0]))+','+c(p.Y(q[1]));pen='L';cnt++;});
var lv=null;for(var j=s.points.length-1;j>=0;j--)if(s.points[j][1]!==null){lv=s.points[j][1];break;}
last.push(lv===null?'':String(Math.round(lv*1e6)/1e6));
var path=el('path',{'class':'line','data-series':s.name,'data-points':String(cnt),d:d||'M0,0',
stroke:s.color,'stroke-width':'2'});
if(s.dash)path.setAttribute('stroke-dasharray','6 4');
path.appendChild(el('title',{},s.name+': '+(lv===null?'no data':yfmt(lv)+(o.unit?' '+o.unit:''))));
svg.appendChild(path);if(first===null&&cnt>0)first=s;});
svg.setAttribute('data-last',last.join(','));
if(first){var ts=[],vs=[];first.points.forEach(function(q){if(q[1]!==null){ts.push(q[0]);vs.push(q[1]);}});
svg.setAttribute('data-hover','series');svg.setAttribute('data-x0',c(p.x0));svg.setAttribute('data-x1',c(p.x1));
svg.setAttribute('data-t0',String(p.xa.lo));svg.setAttribute('data-t1',String(p.xa.hi));
svg.setAttribute('data-ts',ts.map(function(v){return Math.round(v*10)/10;}).join(','));
svg.setAttribute('data-vs',vs.map(function(v){return Math.round(v*1e4)/1e4;}).join(','));
svg.setAttribute('data-unit',(o.unit||'')+' ('+first.name+')');
svg.appendChild(el('line',{'class':'xhair',x1:'0',x2:'0',y1:c(p.y0),y2:c(p.y1)}));}
if(n===0)svg.appendChild(el('text',{'class':'empty-label',x:c((p.x0+p.x1)/2),y:c((p.y0+p.y1)/2),
'text-anchor':'middle'},o.empty||'no data yet'));
replace(holder,[svg,legend(o.series)]);}
function barChart(holder,o){var w=o.width||560,rowh=26,h=Math.max(1,o.bars.length)*rowh+16;
var fmt=o.fmt||pct,svg=svgOpen(o.id,o.label,w,h),x0=170,x1=w-70,max=0;
o.bars.forEach(function(b){max=Math.max(max,b.value);});
svg.setAttribute('data-points',String(o.bars.length));
o.bars.forEach(function(b,i){var y=8+i*rowh,bw=max>0?(x1-x0)*b.value/max:0;
svg.appendChild(el('text',{'class':'tick',x:String(x0-8),y:c(y+15),'text-anchor':'end'},b.name));
svg.appendChild(el('rect',{'class':'track',x:String(x0),y:c(y+3),width:c(x1-x0),height:'16',rx:'3'}));
var r=el('rect',{'class':'bar',x:String(x0),y:c(y+3),width:c(Math.max(bw,b.value>0?1.5:0)),
height:'16',rx:'3',fill:b.color,'data-value':String(b.value)});
r.appendChild(el('title',{},b.tip||b.name+': '+fmt(b.value)));svg.appendChild(r);
svg.appendChild(el('text',{'class':'bar-label',x:c(x1+6),y:c(y+15)},fmt(b.value)));});
if(!o.bars.length)svg.appendChild(el('text',{'class':'empty-label',x:c(w/2),y:'24',
'text-anchor':'middle'},o.empty||'no data yet'));
replace(holder,[svg]);}
window.tollgateCharts={niceAxis:niceAxis,compact:compact,count:count,pct:pct,secs:secs,
lineChart:lineChart,barChart:barChart};
})();
