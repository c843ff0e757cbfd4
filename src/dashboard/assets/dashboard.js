// The live dashboard: polls /metrics every second (Prometheus text format 0.0.4, parsed here),
// keeps the last two minutes of samples and redraws the charts (window.tollgateCharts, from
// src/charts/assets/charts.js). The body element carries data-metrics-state (loading|ok|auth|error),
// data-polls (successful polls) and data-scripts-ran="1" once set up, for tests.
(function(){
'use strict';
var KEEP_S=120,POLL_MS=1000,TOKEN_KEY='tollgate-metrics-token';
var PALETTE=['#2563eb','#f59e0b','#10b981','#8b5cf6','#ef4444','#0ea5e9','#ec4899','#84cc16'];
var TC=window.tollgateCharts,body=document.body,history=[],polls=0;
function $(id){return document.getElementById(id);}
function setText(id,text){var e=$(id);if(e)e.textContent=text;}

// ---- Prometheus text format 0.0.4 --------------------------------------------------------------
// parse(text) -> {samples: [{name, labels, value}], types: {family: type}}. Comments other than
// TYPE are skipped; a malformed line is skipped (and counted in .bad).
function parseValue(s){if(s==='+Inf'||s==='Inf')return Infinity;if(s==='-Inf')return -Infinity;
if(s==='NaN')return NaN;var v=Number(s);return s===''||isNaN(v)?null:v;}
function parse(text){var out={samples:[],types:{},bad:0};
text.split('\n').forEach(function(raw){var line=raw.trim();if(!line)return;
if(line[0]==='#'){var m=/^#\s*TYPE\s+(\S+)\s+(\S+)/.exec(line);if(m)out.types[m[1]]=m[2];return;}
var i=0,n=line.length;while(i<n&&/[A-Za-z0-9_:]/.test(line[i]))i++;
var name=line.slice(0,i),labels={};if(!name){out.bad++;return;}
if(line[i]==='{'){i++;
for(;;){while(line[i]===' '||line[i]===',')i++;if(line[i]==='}'){i++;break;}
var k0=i;while(i<n&&/[A-Za-z0-9_]/.test(line[i]))i++;var key=line.slice(k0,i);
while(line[i]===' ')i++;if(!key||line[i]!=='='){out.bad++;return;}i++;while(line[i]===' ')i++;
if(line[i]!=='"'){out.bad++;return;}i++;var val='';
while(i<n&&line[i]!=='"'){if(line[i]==='\\'&&i+1<n){i++;val+=line[i]==='n'?'\n':line[i];}
else val+=line[i];i++;}
if(i>=n){out.bad++;return;}i++;labels[key]=val;}}
var rest=line.slice(i).trim().split(/\s+/),v=parseValue(rest[0]||'');
if(v===null){out.bad++;return;}out.samples.push({name:name,labels:labels,value:v});});
return out;}

// ---- Queries on one parsed scrape -------------------------------------------------------------
function select(m,name,match){return m.samples.filter(function(s){if(s.name!==name)return false;
for(var k in match)if(s.labels[k]!==match[k])return false;return true;});}
function total(m,name,match){var t=0,any=false;select(m,name,match||{}).forEach(function(s){
if(isFinite(s.value)){t+=s.value;any=true;}});return any?t:null;}
function keyOf(labels,keys){return keys.map(function(k){return labels[k]===undefined?'':labels[k];}).join('\u0000');}
// Sums of `name` grouped by label `keys`: {key: {labels, value}}.
function grouped(m,name,keys,match){var g={};select(m,name,match||{}).forEach(function(s){
var k=keyOf(s.labels,keys);if(!g[k])g[k]={labels:s.labels,value:0};g[k].value+=s.value;});return g;}
// Cumulative histogram buckets grouped by `keys`: {key: {labels, buckets: [[le, count]]}}.
function buckets(m,name,keys){var g={};select(m,name+'_bucket',{}).forEach(function(s){
var k=keyOf(s.labels,keys);if(!g[k])g[k]={labels:s.labels,b:{}};
var le=parseValue(s.labels.le);if(le===null)return;g[k].b[le]=(g[k].b[le]||0)+s.value;});
Object.keys(g).forEach(function(k){var b=g[k].b;g[k].buckets=Object.keys(b).map(Number)
.sort(function(x,y){return x-y;}).map(function(le){return [le,b[le]];});});return g;}
// histogram_quantile over bucket deltas (Prometheus' linear interpolation); null without data.
function quantile(q,now,then){if(!now)return null;var d=now.map(function(b,i){
var prev=then&&then[i]&&then[i][0]===b[0]?then[i][1]:0;return [b[0],Math.max(0,b[1]-prev)];});
if(!d.length)return null;var cnt=d[d.length-1][1];if(!(cnt>0))return null;var rank=q*cnt;
for(var i=0;i<d.length;i++){if(d[i][1]>=rank){if(d[i][0]===Infinity)return i>0?d[i-1][0]:null;
var lo=i>0?d[i-1][0]:0,clo=i>0?d[i-1][1]:0,inb=d[i][1]-clo;
if(i===0&&d[i][0]<=0)return d[i][0];return inb>0?lo+(d[i][0]-lo)*(rank-clo)/inb:d[i][0];}}
return null;}

// ---- Series over the kept history -------------------------------------------------------------
function sampleBack(i,secs){var t=history[i].t-secs;for(var j=i;j>=0;j--)if(history[j].t<=t)return j;
return 0;}
// Per-second rate of a counter selected by fn(m) between consecutive samples; resets are gaps.
function rateSeries(fn){var now=history[history.length-1].t,pts=[];
for(var i=1;i<history.length;i++){var a=fn(history[i-1].m),b=fn(history[i].m),dt=history[i].t-history[i-1].t;
var v=a===null||b===null||dt<=0||b<a?null:(b-a)/dt;pts.push([history[i].t-now,v]);}return pts;}
function gaugeSeries(fn){var now=history[history.length-1].t;
return history.map(function(h){return [h.t-now,fn(h.m)];});}
function quantileSeries(q,fam,keys,key,win){var now=history[history.length-1].t,pts=[];
for(var i=1;i<history.length;i++){var j=sampleBack(i,win);if(j===i)j=i-1;
var a=buckets(history[j].m,fam,keys)[key],b=buckets(history[i].m,fam,keys)[key];
pts.push([history[i].t-now,quantile(q,b&&b.buckets,a&&a.buckets)]);}return pts;}
function lastValue(pts){for(var i=pts.length-1;i>=0;i--)if(pts[i][1]!==null&&isFinite(pts[i][1]))return pts[i][1];
return null;}
function windowDelta(fn,secs){var i=history.length-1,j=sampleBack(i,secs);
var a=fn(history[j].m),b=fn(history[i].m);return a===null||b===null||b<a?null:b-a;}

// ---- Drawing -----------------------------------------------------------------------------------
var DEC='tollgate_ratelimit_decisions_total';
function label(l){return (l.policy||'?')+' \u00b7 '+(l.layer||'?');}
function chartOpts(id,text,series,ytitle,unit,yfmt,yspan){return {id:id,label:text,series:series,
xmin:-KEEP_S,xmax:0,xtitle:'seconds (0 = now)',ytitle:ytitle,unit:unit,yfmt:yfmt,yspan:yspan};}
function decisionSeries(result){var m=history[history.length-1].m,g=grouped(m,DEC,['policy','layer'],{result:result});
return Object.keys(g).sort().map(function(k,i){var l=g[k].labels;return {name:label(l),
color:PALETTE[i%PALETTE.length],points:rateSeries(function(mm){var h=grouped(mm,DEC,['policy','layer'],{result:result})[k];
return h?h.value:null;})};});}
function latencySeries(fam,keys,name){var m=history[history.length-1].m,g=buckets(m,fam,keys),out=[];
Object.keys(g).sort().forEach(function(k,i){var col=PALETTE[i%PALETTE.length],n=name(g[k].labels);
out.push({name:n+' p50',color:col,points:quantileSeries(0.5,fam,keys,k,5)});
out.push({name:n+' p99',color:col,dash:true,points:quantileSeries(0.99,fam,keys,k,5)});});return out;}
function ms(v){return TC.compact(v*1000)+' ms';}
function draw(){var m=history[history.length-1].m;
var allowed=decisionSeries('allowed'),denied=decisionSeries('denied'),shadow=decisionSeries('shadow_denied');
TC.lineChart($('holder-allowed'),chartOpts('chart-allowed','Allowed decisions per second',allowed,'allowed / s','/s'));
TC.lineChart($('holder-denied'),chartOpts('chart-denied','Denied decisions per second',denied,'denied / s','/s'));
TC.lineChart($('holder-shadow'),chartOpts('chart-shadow','Shadow-layer disagreements per second',shadow,'would deny / s','/s'));
// Denying layer's share over the last 60 s (cumulative while less history is kept).
var dg=grouped(m,DEC,['policy','layer'],{result:'denied'}),bars=[],sum=0;
Object.keys(dg).sort().forEach(function(k,i){var d=windowDelta(function(mm){var h=grouped(mm,DEC,['policy','layer'],{result:'denied'})[k];
return h?h.value:0;},60);if(d===null)d=0;sum+=d;bars.push({name:label(dg[k].labels),value:d,color:PALETTE[i%PALETTE.length]});});
bars.forEach(function(b){b.tip=b.name+': '+TC.count(b.value)+' denied ('+TC.pct(sum>0?b.value/sum:0)+')';
b.value=sum>0?b.value/sum:0;});
TC.barChart($('holder-deny-share'),{id:'chart-deny-share',label:"Denying layer's share",bars:bars,
empty:'nothing denied in the last 60 s'});
// Check latency per policy.
var lat=latencySeries('tollgate_ratelimit_check_duration_seconds',['policy'],function(l){return l.policy||'?';});
TC.lineChart($('holder-latency'),chartOpts('chart-latency','Rate check latency p50 and p99',lat,'latency','s',ms,1e-5));
// Locks.
var ACQ='tollgate_lock_acquisitions_total',locks=[{name:'waiters',color:'#8b5cf6',
points:gaugeSeries(function(mm){return total(mm,'tollgate_lock_waiters');})}];
['granted','contended','timeout'].forEach(function(r,i){locks.push({name:r+' / s',
color:['#10b981','#f59e0b','#ef4444'][i],dash:r!=='granted',points:rateSeries(function(mm){return total(mm,ACQ,{result:r});})});});
TC.lineChart($('holder-locks'),chartOpts('chart-locks','Lock waiters and acquisitions per second',locks,'count, per s',''));
// Fences.
var FW='tollgate_fence_writes_total',fences=[{name:'accepted / s',color:'#10b981',
points:rateSeries(function(mm){return total(mm,FW,{result:'accepted'});})},{name:'stale / s',color:'#dc2626',
points:rateSeries(function(mm){return total(mm,FW,{result:'stale'});})}];
TC.lineChart($('holder-fences'),chartOpts('chart-fences','Fenced writes per second',fences,'writes / s','/s'));
// Store fsync latency.
var fs=latencySeries('tollgate_store_fsync_duration_seconds',[],function(){return 'fsync';});
TC.lineChart($('holder-fsync'),chartOpts('chart-fsync','Store fsync latency p50 and p99',fs,'latency','s',ms,1e-5));
tiles(m,allowed,denied,shadow,lat);}
function sumLast(series){var t=0,any=false;series.forEach(function(s){var v=lastValue(s.points);if(v!==null){t+=v;any=true;}});
return any?t:null;}
function tiles(m,allowed,denied,shadow,lat){var a=sumLast(allowed),d=sumLast(denied),s=sumLast(shadow);
setText('tile-rate',a===null&&d===null?'\u2013':TC.compact((a||0)+(d||0)));
setText('tile-rate-sub',(a===null?'\u2013':TC.compact(a))+' allowed, '+(d===null?'\u2013':TC.compact(d))+' denied / s');
var dd=windowDelta(function(mm){return total(mm,DEC,{result:'denied'})||0;},10),
ad=windowDelta(function(mm){return total(mm,DEC,{result:'allowed'})||0;},10);
setText('tile-denied',dd===null||ad===null||dd+ad===0?'\u2013':TC.pct(dd/(dd+ad)));
setText('tile-shadow',s===null?'\u2013':TC.compact(s));
var p99=null,p50=null;lat.forEach(function(x){var v=lastValue(x.points);if(v===null)return;
if(/p99$/.test(x.name))p99=Math.max(p99||0,v);else p50=Math.max(p50||0,v);});
setText('tile-p99',p99===null?'\u2013':ms(p99));setText('tile-p50','p50 '+(p50===null?'\u2013':ms(p50))+' (slowest policy)');
var w=total(m,'tollgate_lock_waiters');setText('tile-waiters',w===null?'\u2013':TC.count(w));
var g=total(m,'tollgate_lock_acquisitions_total',{result:'granted'});
setText('tile-locks','acquisitions granted '+(g===null?'\u2013':TC.count(g))+' (total)');
var st=total(m,'tollgate_fence_writes_total',{result:'stale'});setText('tile-stale',st===null?'\u2013':TC.count(st));
var bi=select(m,'tollgate_build_info',{});setText('version',bi.length?bi[0].labels.version||'?':'?');
var cl=total(m,'tollgate_connected_clients');setText('clients',cl===null?'?':TC.count(cl));
var pi=select(m,'tollgate_policy_info',{}).filter(function(x){return x.value!==0;});
setText('policy-path',pi.length?pi.map(function(x){return x.labels.path||'?';}).join(', '):'none loaded');
var ok=total(m,'tollgate_policy_last_reload_success'),ts=total(m,'tollgate_policy_last_reload_timestamp_seconds');
var rl=$('policy-reload');
if(ok===null&&ts===null){rl.textContent='never';rl.className='';}
else{var when=ts?new Date(ts*1000):null;
rl.textContent=(ok===1?'ok':ok===0?'failed':'?')+(when?' at '+when.toISOString().replace('T',' ').replace(/\.\d+Z$/,' UTC'):'');
rl.className=ok===1?'ok':ok===0?'failed':'';}
var rr=grouped(m,'tollgate_policy_reloads_total',['result']),parts=[];
Object.keys(rr).sort().forEach(function(k){parts.push(TC.count(rr[k].value)+' '+(rr[k].labels.result||'?'));});
setText('policy-reloads',parts.length?parts.join(', '):'0');}

// ---- Polling -----------------------------------------------------------------------------------
function state(s,text,bad){body.setAttribute('data-metrics-state',s);var st=$('status');
st.textContent=text;st.className='status'+(bad?' bad':'');}
function poll(){var started=Date.now(),headers={'Accept':'text/plain'},token=null;
try{token=sessionStorage.getItem(TOKEN_KEY);}catch(e){token=null;}
if(token)headers['Authorization']='Bearer '+token;
fetch('metrics',{headers:headers,cache:'no-store',credentials:'same-origin'}).then(function(r){
if(r.status===401||r.status===403){$('auth-needed').hidden=false;
setText('auth-error',token?'The token was refused (HTTP '+r.status+').':'');
state('auth','/metrics answered HTTP '+r.status+': it needs a Bearer token (--metrics-auth).',true);return null;}
if(!r.ok){state('error','/metrics answered HTTP '+r.status+'; retrying every second.',true);return null;}
return r.text();}).then(function(text){if(text===null||text===undefined)return;
$('auth-needed').hidden=true;var m=parse(text),t=performance.now()/1000;
history.push({t:t,m:m});while(history.length>2&&history[0].t<t-KEEP_S-1)history.shift();
polls++;body.setAttribute('data-polls',String(polls));
state('ok','Live: '+m.samples.length+' samples per scrape'+(m.bad?', '+m.bad+' unreadable lines skipped':'')+'.',false);
setText('updated',new Date().toLocaleTimeString('en-GB'));draw();
}).catch(function(e){state('error','Cannot read /metrics ('+(e&&e.message?e.message:e)+'); retrying every second.',true);
}).then(function(){setTimeout(poll,Math.max(50,POLL_MS-(Date.now()-started)));});}
$('auth-form').addEventListener('submit',function(e){e.preventDefault();
try{sessionStorage.setItem(TOKEN_KEY,$('auth-token').value.trim());}catch(err){}
setText('auth-error','');});
window.tollgateDashboard={parse:parse,quantile:quantile};
poll();
body.setAttribute('data-scripts-ran','1');
})();
