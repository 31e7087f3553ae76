import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SERIES_COLOURS, escapeXml, formatPercent, lineChartSvg, markdownTable, niceTicks } from '../src/report.js';

interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

/**
 * A strict parser for the XML subset an SVG needs: elements, quoted attributes, text with
 * the five predefined entities. Throws on anything malformed (unbalanced tags, bare `&`
 * or `<`, duplicate attributes, content after the root).
 */
function parseXml(xml: string): XmlElement {
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`XML error at ${i}: ${why}: ${JSON.stringify(xml.slice(i, i + 40))}`);
  };
  const checkText = (t: string) => {
    if (/[<>]/.test(t)) fail('raw < or > in text');
    if (/&(?!(amp|lt|gt|quot|apos);)/.test(t)) fail('bare &');
  };
  const skipSpace = () => {
    while (i < xml.length && /\s/.test(xml[i]!)) i++;
  };
  const element = (): XmlElement => {
    if (xml[i] !== '<') fail('expected <');
    i++;
    const name = /^[A-Za-z][\w:-]*/.exec(xml.slice(i))?.[0] ?? fail('bad tag name');
    i += name.length;
    const el: XmlElement = { name, attrs: {}, children: [], text: '' };
    for (;;) {
      skipSpace();
      if (xml.startsWith('/>', i)) {
        i += 2;
        return el;
      }
      if (xml[i] === '>') {
        i++;
        break;
      }
      const m = /^([A-Za-z][\w:-]*)="([^"]*)"/.exec(xml.slice(i)) ?? fail('bad attribute');
      if (m[1]! in el.attrs) fail(`duplicate attribute ${m[1]}`);
      checkText(m[2]!);
      el.attrs[m[1]!] = m[2]!;
      i += m[0].length;
    }
    for (;;) {
      const next = xml.indexOf('<', i);
      if (next < 0) fail(`unclosed <${name}>`);
      const text = xml.slice(i, next);
      checkText(text);
      el.text += text;
      i = next;
      if (xml.startsWith('</', i)) {
        const close = `</${name}>`;
        if (!xml.startsWith(close, i)) fail(`expected ${close}`);
        i += close.length;
        return el;
      }
      el.children.push(element());
    }
  };
  skipSpace();
  const root = element();
  skipSpace();
  if (i !== xml.length) fail('content after the root element');
  return root;
}

function all(el: XmlElement, name: string): XmlElement[] {
  return [...(el.name === name ? [el] : []), ...el.children.flatMap((c) => all(c, name))];
}

describe('lineChartSvg', () => {
  const chart = () =>
    lineChartSvg({
      title: 'Reward <mean> & "std"',
      xLabel: 'step',
      yLabel: 'reward',
      series: [
        { name: 'hard', points: [[0, 10], [1, 40], [2, 70]] },
        { name: 'soft', points: [[0, 12], [1, NaN], [2, 60], [3, 80]] },
        { name: 'fuzzy', points: [[0, 5], [3, 90]] },
      ],
    });

  it('is a well-formed standalone SVG with axes, ticks, labels and a legend', () => {
    const svg = chart();
    const root = parseXml(svg);
    expect(root.name).toBe('svg');
    expect(root.attrs['xmlns']).toBe('http://www.w3.org/2000/svg');
    expect(root.attrs['viewBox']).toBe('0 0 640 400');
    const texts = all(root, 'text').map((t) => t.text);
    expect(texts).toContain('Reward &lt;mean&gt; &amp; &quot;std&quot;');
    expect(texts).toEqual(expect.arrayContaining(['step', 'reward', 'hard', 'soft', 'fuzzy', '0', '1', '2', '3']));
    // The NaN breaks the soft series into a single point and a two-point segment.
    const polylines = all(root, 'polyline');
    expect(polylines.map((p) => p.attrs['stroke'])).toEqual([SERIES_COLOURS[0], SERIES_COLOURS[1], SERIES_COLOURS[2]]);
    expect(polylines[0]!.attrs['points']!.split(' ')).toHaveLength(3);
    for (const p of polylines) {
      for (const pt of p.attrs['points']!.split(' ')) expect(pt).toMatch(/^-?\d+(\.\d+)?,-?\d+(\.\d+)?$/);
    }
    expect(all(root, 'line').length).toBeGreaterThan(10);
    expect(all(root, 'clipPath')).toHaveLength(1);
  });

  it('is deterministic', () => {
    expect(chart()).toBe(chart());
  });

  it('gives every series a distinct colour', () => {
    const series = Array.from({ length: 10 }, (_, i) => ({ name: `s${i}`, points: [[0, i], [1, i + 1]] as [number, number][] }));
    const root = parseXml(lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', series }));
    const colours = all(root, 'polyline').map((p) => p.attrs['stroke']);
    expect(new Set(colours).size).toBe(10);
  });

  it('uses a series\' own colour in its line, band and legend, and draws bands under the lines', () => {
    const svg = lineChartSvg({
      title: 'bands', xLabel: 'x', yLabel: 'y',
      series: [
        { name: 'hard-trained', colour: '#123456', points: [[0, 1], [1, 2], [2, 3]], band: [[0, 0.5, 1.5], [1, 1, 3], [2, 2, 9]] },
        { name: 'soft-trained', points: [[0, 2], [1, 2]] },
      ],
    });
    const root = parseXml(svg);
    const polygons = all(root, 'polygon');
    expect(polygons).toHaveLength(1);
    expect(polygons[0]!.attrs['fill']).toBe('#123456');
    // Upper edge left to right, then the lower edge back: 2 × 3 points.
    expect(polygons[0]!.attrs['points']!.split(' ')).toHaveLength(6);
    expect(all(root, 'polyline').map((p) => p.attrs['stroke'])).toEqual(['#123456', SERIES_COLOURS[1]]);
    const legendLines = all(root, 'line').filter((l) => l.attrs['stroke-width'] === '3');
    expect(legendLines.map((l) => l.attrs['stroke'])).toEqual(['#123456', SERIES_COLOURS[1]]);
    // The band's high point (9) is inside the y range.
    expect(all(root, 'text').map((t) => t.text)).toContain('10');
    expect(svg.indexOf('<polygon')).toBeLessThan(svg.indexOf('<polyline'));
  });

  it('stays well-formed for any data, names and ranges', () => {
    const point = fc.tuple(fc.double(), fc.double());
    fc.assert(
      fc.property(
        fc.string(),
        fc.array(fc.record({ name: fc.string(), points: fc.array(point, { maxLength: 8 }) }), { maxLength: 4 }),
        (title, series) => {
          const svg = lineChartSvg({ title, xLabel: '<x>', yLabel: 'y&', series });
          const root = parseXml(svg);
          expect(root.name).toBe('svg');
          expect(svg).not.toMatch(/NaN|Infinity/);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('lineChartSvg at the ends of the double range', () => {
  it.each([
    [[[-Number.MAX_VALUE, 0], [Number.MAX_VALUE, 1]]],
    [[[0, Number.MAX_VALUE], [1, Number.MAX_VALUE]]],
    [[[0, 5e-324], [1, 0]]],
    [[[0, -Number.MAX_VALUE], [1, Number.MAX_VALUE]]],
    [[[1, 1]]],
    [[]],
  ] as [number, number][][][])('draws %j without NaN or Infinity', (points) => {
    const svg = lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points }] });
    expect(parseXml(svg).name).toBe('svg');
    expect(svg).not.toMatch(/NaN|Infinity/);
  });
});

describe('niceTicks', () => {
  it('picks round steps', () => {
    expect(niceTicks(0, 100, 5)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(-3, 7, 5)).toEqual([-2, 0, 2, 4, 6]);
    expect(niceTicks(5, 5)).toEqual([5]);
  });
});

describe('Markdown', () => {
  it('formats percentages with one decimal', () => {
    expect(formatPercent(0.714)).toBe('71.4%');
    expect(formatPercent(0.96849)).toBe('96.8%');
    expect(formatPercent(1)).toBe('100.0%');
    expect(formatPercent(0)).toBe('0.0%');
    expect(formatPercent(0.5, false)).toBe('50.0');
    expect(formatPercent(NaN)).toBe('–');
  });

  it('builds an aligned table, right-aligning numeric columns and escaping pipes', () => {
    const table = markdownTable(
      ['model', 'greedy@1', 'n'],
      [
        ['base', formatPercent(0.714), 1319],
        ['soft | trained', formatPercent(0.772), 1319],
      ],
    );
    expect(table).toBe(
      [
        '| model           | greedy@1 |    n |',
        '| --------------- | -------: | ---: |',
        '| base            |    71.4% | 1319 |',
        '| soft \\| trained |    77.2% | 1319 |',
        '',
      ].join('\n'),
    );
  });

  it('rejects rows of the wrong width', () => {
    expect(() => markdownTable(['a', 'b'], [['1']])).toThrow('row 0 has 1 cells, expected 2');
  });

  it('escapes XML text', () => {
    expect(escapeXml(`<a href="x">&'`)).toBe('&lt;a href=&quot;x&quot;&gt;&amp;&apos;');
  });
});
