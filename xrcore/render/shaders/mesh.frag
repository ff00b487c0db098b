// Blinn-Phong with a headlight and hemisphere ambient, per-structure material, selection
// rim highlight, and the cut face of clipped structures: where a clip plane opens a closed surface
// the viewer sees its back faces, which are drawn as a flat, lit cap facing out of the cut.
in vec3 v_view;
in vec3 v_normal;
flat in uint v_structure;
#if CAPS
in vec3 v_world;
#endif

uniform samplerBuffer u_materials;  // per structure: colour (linear RGBA), (highlight, shininess, specular, -)
uniform vec4 u_clip[6];
uniform int u_clip_count;
uniform vec3 u_highlight_color;
uniform vec3 u_cap_tint;

out vec4 o_color;

vec3 shade(vec3 base, vec3 n, vec3 v, float shininess, float specular) {
  // Blinn-Phong under a headlight (the light sits at the eye, so the half vector is the view vector:
  // one dot product serves diffuse and specular), plus a sky/ground hemisphere ambient that darkens
  // downward-facing surfaces, giving shape cues from above without a second light to evaluate.
  float d = max(dot(n, v), 0.0);
  float sky = 0.5 + 0.5 * n.y;
  vec3 ambient = base * mix(0.06, 0.24, sky);
  return ambient + base * (0.8 * d) + vec3(specular * pow(d, shininess));
}

void main() {
  int sid = int(v_structure);
  vec4 base = texelFetch(u_materials, 2 * sid);
  vec4 params = texelFetch(u_materials, 2 * sid + 1);  // highlight, shininess, specular
  vec3 v = normalize(v_view);
#if CAPS
  // Only while clip planes are active (the renderer builds this variant for it: a software
  // rasteriser runs both sides of a branch, so the everyday variant carries no cap code).
  if (!gl_FrontFacing) {
    // Cap: lit as the plane the fragment lies closest to, its normal facing the removed side.
    vec3 cn = -v;
    float nearest = 1e9;
    for (int i = 0; i < u_clip_count; ++i) {
      float d = abs(dot(u_clip[i], vec4(v_world, 1.0)));
      if (d < nearest) { nearest = d; cn = -u_clip[i].xyz; }
    }
    if (dot(cn, v) < 0.0) cn = -cn;
    vec3 cap = shade(base.rgb * u_cap_tint, cn, v, 8.0, 0.05);
    o_color = vec4(mix(cap, u_highlight_color, params.x * 0.25), base.a);
    return;
  }
#endif
  // back faces (the inside of a transparent structure) are lit from their own side
  vec3 n = normalize(gl_FrontFacing ? v_normal : -v_normal);
  vec3 color = shade(base.rgb, n, v, params.y, params.z);
  // selection (params.x 1, else 0): a rim that brightens silhouettes, plus a faint overall tint
  float rim = 1.0 - max(dot(n, v), 0.0);
  color = mix(color, u_highlight_color, params.x * (0.25 + 0.75 * rim * rim));
  o_color = vec4(color, base.a);
}
